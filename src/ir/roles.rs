//! Assigning parameter roles and channel axes, so per-channel views need no guessing.
//!
//! In a graph, a tensor's role follows from the op input that reads it (Conv input 1 is a
//! weight with output channels on axis 0, Gemm's B has them on axis 0 or 1 depending on
//! `transB`, ...). Weights-only files have no graph, so roles come from PyTorch-style names
//! (`*.weight`, `*.bias`, `*.running_mean`) and shapes.

use std::collections::{HashMap, HashSet};

use super::graph::{Graph, Node};
use super::tensor::{ParamRole, TensorData};

/// Gives every initializer its role and channel axis.
pub fn assign_roles(graph: &mut Graph) {
    if graph.nodes.is_empty() {
        assign_by_name(graph);
    } else {
        assign_by_consumer(graph);
    }
}

fn assign_by_consumer(graph: &mut Graph) {
    // Subgraphs read their weights from the top graph (see `ir::scope`), so their nodes are
    // consumers too.
    let nodes = graph.nodes_recursive();
    let producer_op: HashMap<&str, &str> = nodes
        .iter()
        .flat_map(|n| {
            n.outputs
                .iter()
                .map(move |o| (o.as_str(), n.op_type.as_str()))
        })
        .collect();
    let mut assigned: HashMap<String, (ParamRole, Option<usize>)> = HashMap::new();
    for node in &nodes {
        for (position, name) in node.inputs.iter().enumerate() {
            let Some(tensor) = graph.initializers.get(name) else {
                continue;
            };
            if !matches!(tensor.data, TensorData::F32(_)) {
                continue;
            }
            let rank = tensor.data.shape().len();
            let Some(found) = role_from_consumer(node, position, rank, &producer_op) else {
                continue;
            };
            // A weight role wins over any other reading of the same tensor.
            let keep_existing = assigned
                .get(name)
                .is_some_and(|(role, _)| *role == ParamRole::Weight);
            if !keep_existing {
                assigned.insert(name.clone(), found);
            }
        }
    }
    for (name, tensor) in graph.initializers.iter_mut() {
        let (role, axis) = match (&tensor.data, assigned.remove(name)) {
            (TensorData::I64(_), _) => (ParamRole::Constant, None),
            (_, Some(found)) => found,
            (data, None) if data.len() <= 1 => (ParamRole::Constant, None),
            (_, None) => (ParamRole::Other, None),
        };
        tensor.role = role;
        // An empty tensor has no channels to quantize, however long its axes claim to be.
        tensor.channel_axis =
            axis.filter(|&a| a < tensor.data.shape().len() && !tensor.data.is_empty());
    }
}

/// The role of the tensor read at input `position` of `node`, if that input has one.
fn role_from_consumer(
    node: &Node,
    position: usize,
    rank: usize,
    producer_op: &HashMap<&str, &str>,
) -> Option<(ParamRole, Option<usize>)> {
    let last = rank.checked_sub(1);
    Some(match (node.op_type.as_str(), position) {
        ("Conv", 1) => (ParamRole::Weight, Some(0)),
        ("ConvTranspose", 1) => (ParamRole::Weight, Some(1)),
        ("Conv" | "ConvTranspose", 2) => (ParamRole::Bias, Some(0)),
        ("Gemm", 1) => {
            let trans_b = node.attr_int("transB", 0).unwrap_or(0) != 0;
            (ParamRole::Weight, Some(if trans_b { 0 } else { 1 }))
        }
        ("Gemm", 2) => (ParamRole::Bias, last),
        ("MatMul", 1) => (ParamRole::Weight, last),
        ("MatMul", 0) if rank >= 2 => (ParamRole::Weight, Some(rank - 2)),
        ("BatchNormalization", 1) => (ParamRole::BnScale, Some(0)),
        ("BatchNormalization", 2) => (ParamRole::BnBias, Some(0)),
        ("BatchNormalization", 3) => (ParamRole::BnMean, Some(0)),
        ("BatchNormalization", 4) => (ParamRole::BnVar, Some(0)),
        ("LayerNormalization", 1 | 2) => (ParamRole::NormParam, last),
        // W [directions, gates·hidden, input] and R [directions, gates·hidden, hidden]: one
        // row per gate unit, so axis 1; B [directions, 2·gates·hidden] likewise.
        ("LSTM" | "GRU" | "RNN", 1 | 2) => (ParamRole::Weight, Some(1)),
        ("LSTM" | "GRU" | "RNN", 3) => (ParamRole::Bias, Some(1)),
        ("Gather", 0) => (ParamRole::Embedding, None),
        ("Add", 0 | 1) => {
            // A bias when the other operand comes from a MatMul/Gemm.
            let other = node.input(1 - position)?;
            match producer_op.get(other) {
                Some(&("MatMul" | "Gemm")) => (ParamRole::Bias, last),
                _ => return None,
            }
        }
        _ => return None,
    })
}

fn assign_by_name(graph: &mut Graph) {
    let names: HashSet<String> = graph.initializers.keys().cloned().collect();
    let is_batch_norm = |prefix: &str| {
        names.contains(&format!("{prefix}.running_mean"))
            || names.contains(&format!("{prefix}.running_var"))
    };
    for (name, tensor) in graph.initializers.iter_mut() {
        let rank = tensor.data.shape().len();
        let (prefix, leaf) = name.rsplit_once('.').unwrap_or(("", name.as_str()));
        let (role, axis) = if matches!(tensor.data, TensorData::I64(_)) {
            (ParamRole::Constant, None)
        } else {
            match leaf {
                "running_mean" => (ParamRole::BnMean, Some(0)),
                "running_var" => (ParamRole::BnVar, Some(0)),
                "weight" | "gamma" if rank == 1 && is_batch_norm(prefix) => {
                    (ParamRole::BnScale, Some(0))
                }
                "bias" | "beta" if rank == 1 && is_batch_norm(prefix) => {
                    (ParamRole::BnBias, Some(0))
                }
                "weight" | "gamma" if rank == 1 => (ParamRole::NormParam, Some(0)),
                "weight" | "kernel" if rank >= 2 => (ParamRole::Weight, Some(0)),
                "bias" => (ParamRole::Bias, Some(0)),
                _ if rank >= 2 => (ParamRole::Other, Some(0)),
                _ => (ParamRole::Other, None),
            }
        };
        tensor.role = role;
        tensor.channel_axis = axis.filter(|&a| a < rank && !tensor.data.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Attribute, DType, Tensor};
    use ndarray::ArrayD;
    use std::collections::BTreeMap;

    fn tensor(name: &str, shape: &[usize]) -> Tensor {
        Tensor::new(
            name,
            TensorData::F32(ArrayD::zeros(shape.to_vec())),
            DType::F32,
        )
    }

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
        Node {
            name: format!("{op}_0"),
            op_type: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn graph_roles_follow_consumers() {
        let mut g = Graph::default();
        for t in [
            tensor("w", &[8, 3, 3, 3]),
            tensor("b", &[8]),
            tensor("tw", &[8, 4, 2, 2]),
            tensor("gb", &[10, 8]),
            tensor("mm", &[8, 5]),
            tensor("mb", &[5]),
            tensor("s", &[8]),
            tensor("bb", &[8]),
            tensor("m", &[8]),
            tensor("v", &[8]),
        ] {
            g.initializers.insert(t.name.clone(), t);
        }
        let mut gemm = node("Gemm", &["x3", "gb"], &["y"]);
        gemm.attributes.insert("transB".into(), Attribute::Int(1));
        g.nodes = vec![
            node("Conv", &["x", "w", "b"], &["c"]),
            node("BatchNormalization", &["c", "s", "bb", "m", "v"], &["x2"]),
            node("ConvTranspose", &["x2", "tw"], &["x3"]),
            gemm,
            node("MatMul", &["x3", "mm"], &["p"]),
            node("Add", &["p", "mb"], &["q"]),
        ];
        assign_roles(&mut g);
        let role = |n: &str| {
            let t = &g.initializers[n];
            (t.role, t.channel_axis)
        };
        assert_eq!(role("w"), (ParamRole::Weight, Some(0)));
        assert_eq!(role("b"), (ParamRole::Bias, Some(0)));
        assert_eq!(role("tw"), (ParamRole::Weight, Some(1)));
        assert_eq!(role("gb"), (ParamRole::Weight, Some(0)));
        assert_eq!(role("mm"), (ParamRole::Weight, Some(1)));
        assert_eq!(role("mb"), (ParamRole::Bias, Some(0)));
        assert_eq!(role("s"), (ParamRole::BnScale, Some(0)));
        assert_eq!(role("v"), (ParamRole::BnVar, Some(0)));
    }

    #[test]
    fn weights_only_roles_follow_names() {
        let mut g = Graph::default();
        for t in [
            tensor("conv1.weight", &[16, 1, 3, 3]),
            tensor("conv1.bias", &[16]),
            tensor("bn1.weight", &[16]),
            tensor("bn1.bias", &[16]),
            tensor("bn1.running_mean", &[16]),
            tensor("bn1.running_var", &[16]),
            tensor("ln.weight", &[16]),
        ] {
            g.initializers.insert(t.name.clone(), t);
        }
        assign_roles(&mut g);
        let role = |n: &str| g.initializers[n].role;
        assert_eq!(role("conv1.weight"), ParamRole::Weight);
        assert_eq!(role("conv1.bias"), ParamRole::Bias);
        assert_eq!(role("bn1.weight"), ParamRole::BnScale);
        assert_eq!(role("bn1.bias"), ParamRole::BnBias);
        assert_eq!(role("bn1.running_var"), ParamRole::BnVar);
        assert_eq!(role("ln.weight"), ParamRole::NormParam);
    }
}
