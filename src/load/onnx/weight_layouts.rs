//! Weights stored in another layout than the one their layer reads.
//!
//! Exporters often store a weight once and reshape it in the graph: PyTorch's LSTM export reads
//! `W = Unsqueeze(Concat(Slice(weight_ih), ...))` (the gates reordered from PyTorch's i, f, g, o
//! to ONNX's i, o, f, c), TensorFlow converters transpose kernels, paddle2onnx reshapes.
//! The layer then reads a computed tensor, not an initializer, and nothing that works on weights
//! (roles, weight views, quantization, the QDQ export) would see it. At load, a chain of pure
//! layout ops (Unsqueeze, Squeeze, Reshape, Flatten, Transpose, Identity, Slice, Concat) on
//! constants that ends at a weight input of a quantizable layer ([`weight_input_names`]) is
//! evaluated once and replaced by the initializer it computes, named as the chain's output.
//! The values are the file's values, only arranged as the layer reads them; a stored tensor
//! nothing else reads is dropped. Each graph (subgraphs included, before they are closed over
//! their scope) is folded on its own.

use std::collections::{BTreeMap, HashSet};

use crate::engine::ops::{self, OpCtx};
use crate::ir::{Attribute, Graph, Node, Tensor, TensorData};
use crate::quant::config::weight_input_names;

/// Ops that only select and rearrange the values of their data inputs (the other inputs are
/// shapes, axes or bounds).
const LAYOUT_OPS: [&str; 8] = [
    "Unsqueeze",
    "Squeeze",
    "Reshape",
    "Flatten",
    "Transpose",
    "Identity",
    "Slice",
    "Concat",
];

/// Constants visible in a graph: its own initializers, then those of the graphs around it
/// (innermost first), as an ONNX subgraph reads its enclosing scopes by name.
struct Scope<'a> {
    outer: Vec<&'a BTreeMap<String, Tensor>>,
}

impl Scope<'_> {
    fn lookup<'t>(&'t self, graph: &'t Graph, name: &str) -> Option<&'t Tensor> {
        graph
            .initializers
            .get(name)
            .or_else(|| self.outer.iter().rev().find_map(|s| s.get(name)))
    }
}

/// Folds the layout chains feeding weight inputs in `graph` and in every subgraph.
pub(super) fn fold_weight_layouts(graph: &mut Graph) {
    fold_in(graph, &Scope { outer: Vec::new() });
}

/// Where a folded tensor of a subgraph lives: the node, its attribute, the subgraph's index in
/// it (0 for a single-graph attribute), and the tensor's name.
type FoldedInSubgraph = (usize, String, usize, String);

/// Folds in `graph` (its subgraphs first) and returns the names of the folded tensors it holds.
/// Stored tensors that only the folded chains read are dropped.
fn fold_in(graph: &mut Graph, scope: &Scope<'_>) -> Vec<String> {
    let read_before: HashSet<String> = names_read(graph).into_iter().map(String::from).collect();
    let mut in_subgraphs: Vec<FoldedInSubgraph> = Vec::new();
    {
        let Graph {
            nodes,
            initializers,
            ..
        } = &mut *graph;
        let mut outer = scope.outer.clone();
        outer.push(initializers);
        let inner = Scope { outer };
        for (index, node) in nodes.iter_mut().enumerate() {
            for (attribute, value) in node.attributes.iter_mut() {
                for (sub_index, sub) in subgraphs_mut(value).into_iter().enumerate() {
                    for name in fold_in(sub, &inner) {
                        in_subgraphs.push((index, attribute.clone(), sub_index, name));
                    }
                }
            }
        }
    }
    let mut folded = share_between_siblings(graph, in_subgraphs);
    // Each fold turns one more link of a chain into an initializer; chains are short.
    while let Some((index, tensor)) = next_fold(graph, scope) {
        graph.nodes.remove(index);
        folded.push(tensor.name.clone());
        graph.initializers.insert(tensor.name.clone(), tensor);
    }
    let read = names_read(graph);
    let unread: Vec<String> = graph
        .initializers
        .keys()
        .filter(|name| read_before.contains(name.as_str()) && !read.contains(name.as_str()))
        .cloned()
        .collect();
    for name in unread {
        graph.initializers.remove(&name);
    }
    folded
}

/// Folded tensors with equal values in several subgraphs of `graph` (an `If` whose branches
/// both reorder the same stored weight) become one initializer of `graph`, which the
/// subgraphs read from their enclosing scope, so the weight is held and quantized once.
/// Returns the folded tensors `graph` now holds.
fn share_between_siblings(graph: &mut Graph, mut found: Vec<FoldedInSubgraph>) -> Vec<String> {
    let mut shared = Vec::new();
    while let Some(first) = found.pop() {
        let Some(tensor) = subgraph_at(graph, &first).and_then(|g| g.initializers.get(&first.3))
        else {
            continue;
        };
        let tensor = tensor.clone();
        let (same, rest): (Vec<_>, Vec<_>) = found.into_iter().partition(|other| {
            subgraph_at(graph, other)
                .and_then(|g| g.initializers.get(&other.3))
                .is_some_and(|t| t.data == tensor.data)
        });
        found = rest;
        if same.is_empty() || graph.initializers.contains_key(&tensor.name) {
            continue;
        }
        for place in std::iter::once(&first).chain(&same) {
            if let Some(sub) = subgraph_at(graph, place) {
                sub.initializers.remove(&place.3);
                rename_reads(sub, &place.3, &tensor.name);
            }
        }
        shared.push(tensor.name.clone());
        graph.initializers.insert(tensor.name.clone(), tensor);
    }
    shared
}

fn subgraph_at<'g>(graph: &'g mut Graph, place: &FoldedInSubgraph) -> Option<&'g mut Graph> {
    let (node, attribute, index, _) = place;
    let value = graph.nodes.get_mut(*node)?.attributes.get_mut(attribute)?;
    subgraphs_mut(value).into_iter().nth(*index)
}

fn subgraphs_mut(attribute: &mut Attribute) -> Vec<&mut Graph> {
    match attribute {
        Attribute::Graph(sub) => vec![&mut sub.graph],
        Attribute::Graphs(subs) => subs.iter_mut().map(|s| &mut s.graph).collect(),
        _ => Vec::new(),
    }
}

/// Every read of `from` in `graph` and its subgraphs reads `to` instead.
fn rename_reads(graph: &mut Graph, from: &str, to: &str) {
    for node in &mut graph.nodes {
        for input in node.inputs.iter_mut().filter(|i| *i == from) {
            *input = to.to_string();
        }
        for value in node.attributes.values_mut() {
            for sub in subgraphs_mut(value) {
                rename_reads(sub, from, to);
            }
        }
    }
    for output in graph.outputs.iter_mut().filter(|o| o.name == from) {
        output.name = to.to_string();
    }
}

/// The next layout node whose output a weight input reads (directly, or through further layout
/// nodes) and whose inputs are all constants, with the tensor it computes.
fn next_fold(graph: &Graph, scope: &Scope<'_>) -> Option<(usize, Tensor)> {
    let mut wanted: HashSet<&str> = graph
        .nodes
        .iter()
        .flat_map(weight_input_names)
        .filter(|name| scope.lookup(graph, name).is_none())
        .collect();
    // Walk back through layout nodes: their inputs are wanted too.
    for node in graph.nodes.iter().rev() {
        if is_layout(node) && node.outputs.iter().any(|o| wanted.contains(o.as_str())) {
            wanted.extend(node.inputs.iter().map(String::as_str));
        }
    }
    let outputs: HashSet<&str> = graph.outputs.iter().map(|o| o.name.as_str()).collect();
    graph.nodes.iter().enumerate().find_map(|(index, node)| {
        let [output] = node.outputs.as_slice() else {
            return None;
        };
        if !is_layout(node)
            || !wanted.contains(output.as_str())
            || outputs.contains(output.as_str())
        {
            return None;
        }
        evaluate(graph, scope, node).map(|tensor| (index, tensor))
    })
}

fn is_layout(node: &Node) -> bool {
    node.in_default_domain() && LAYOUT_OPS.contains(&node.op_type.as_str())
}

/// The float tensor `node` computes from constants only; None when an input is not a
/// constant, the data is not float, or the kernel refuses (the node then stays and reports
/// its error when run).
fn evaluate(graph: &Graph, scope: &Scope<'_>, node: &Node) -> Option<Tensor> {
    let data = scope.lookup(graph, node.input(0)?)?;
    if !matches!(data.data, TensorData::F32(_)) {
        return None;
    }
    let inputs: Option<Vec<Option<&TensorData>>> = node
        .inputs
        .iter()
        .map(|name| match name.as_str() {
            "" => Some(None),
            name => scope.lookup(graph, name).map(|t| Some(&t.data)),
        })
        .collect();
    let kernel = ops::kernel_for(node)?;
    let ctx = OpCtx {
        node,
        opset: graph.opset,
    };
    let value = kernel(&ctx, &inputs?).ok()?.into_iter().next()?;
    Some(Tensor::new(
        node.outputs[0].clone(),
        value,
        data.origin_dtype,
    ))
}

/// Every name a node of `graph` (or of its subgraphs, which may read it from the outer scope)
/// reads, and the graph's outputs.
fn names_read(graph: &Graph) -> HashSet<&str> {
    let mut read: HashSet<&str> = graph.outputs.iter().map(|o| o.name.as_str()).collect();
    collect_reads(graph, &mut read);
    read
}

fn collect_reads<'g>(graph: &'g Graph, read: &mut HashSet<&'g str>) {
    for node in &graph.nodes {
        read.extend(node.inputs.iter().map(String::as_str));
        for attribute in node.attributes.values() {
            let subs = match attribute {
                Attribute::Graph(sub) => std::slice::from_ref(sub.as_ref()),
                Attribute::Graphs(subs) => subs.as_slice(),
                _ => &[],
            };
            for sub in subs {
                read.extend(sub.graph.outputs.iter().map(|o| o.name.as_str()));
                collect_reads(&sub.graph, read);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{DType, Subgraph, ValueInfo};
    use ndarray::{ArrayD, IxDyn};

    fn floats(name: &str, shape: &[usize]) -> Tensor {
        let n = shape.iter().product::<usize>();
        let values = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
        let data = ArrayD::from_shape_vec(IxDyn(shape), values).unwrap();
        Tensor::new(name, TensorData::F32(data), DType::F32)
    }

    fn ints(name: &str, values: &[i64]) -> Tensor {
        let data = ArrayD::from_shape_vec(IxDyn(&[values.len()]), values.to_vec()).unwrap();
        Tensor::new(name, TensorData::I64(data), DType::I64)
    }

    fn value(name: &str) -> ValueInfo {
        ValueInfo {
            name: name.into(),
            dtype: Some(DType::F32),
            shape: None,
        }
    }

    fn graph(nodes: Vec<Node>, initializers: Vec<Tensor>, outputs: &[&str]) -> Graph {
        Graph {
            name: "g".into(),
            nodes,
            inputs: vec![value("x")],
            outputs: outputs.iter().map(|o| value(o)).collect(),
            initializers: initializers
                .into_iter()
                .map(|t| (t.name.clone(), t))
                .collect(),
            opset: 14,
        }
    }

    #[test]
    fn a_transposed_weight_becomes_the_initializer_its_layer_reads() {
        let mut g = graph(
            vec![
                Node::new("t", "Transpose", &["stored"], &["w"])
                    .with_attributes([("perm", Attribute::Ints(vec![1, 0]))]),
                Node::new("mm", "MatMul", &["x", "w"], &["y"]),
                // a layout node on a graph input is not a weight: untouched
                Node::new("r", "Reshape", &["x", "shape"], &["z"]),
            ],
            vec![floats("stored", &[3, 2]), ints("shape", &[-1])],
            &["y", "z"],
        );
        fold_weight_layouts(&mut g);
        let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["MatMul", "Reshape"]);
        let w = g.initializers["w"].data.as_f32().unwrap();
        assert_eq!(w.shape(), [2, 3]);
        // w[i, j] = stored[j, i] = (2j + i)·0.5 − 3
        assert_eq!(w[[1, 2]], (2.0 * 2.0 + 1.0) * 0.5 - 3.0);
        assert!(
            !g.initializers.contains_key("stored"),
            "read by nothing else"
        );
    }

    #[test]
    fn branches_reordering_the_same_outer_weight_share_one_folded_copy() {
        // Each branch of an If reads the outer "stored" through Slice + Concat + Unsqueeze
        // (the gate reordering of PyTorch's LSTM export) into a recurrent layer's W.
        let branch = |tag: &str| {
            let name = |s: &str| format!("{tag}_{s}");
            let nodes = vec![
                Node::new(
                    name("s0"),
                    "Slice",
                    &["stored", "start0", "end0", "axis0"],
                    &[&name("a")],
                ),
                Node::new(
                    name("s1"),
                    "Slice",
                    &["stored", "end0", "end1", "axis0"],
                    &[&name("b")],
                ),
                Node::new(
                    name("c"),
                    "Concat",
                    &[&name("b"), &name("a")],
                    &[&name("cat")],
                )
                .with_attributes([("axis", Attribute::Int(0))]),
                Node::new(
                    name("u"),
                    "Unsqueeze",
                    &[&name("cat"), "axis0"],
                    &[&name("w")],
                ),
                Node::new(name("rnn"), "RNN", &["x", &name("w"), "r"], &[&name("y")])
                    .with_attributes([("hidden_size", Attribute::Int(2))]),
            ];
            let mut g = graph(nodes, vec![], &[&name("y")]);
            g.inputs.clear();
            Subgraph::new(g)
        };
        let mut top = graph(
            vec![Node::new("if", "If", &["cond"], &["y"]).with_attributes([
                ("then_branch", Attribute::Graph(Box::new(branch("then")))),
                ("else_branch", Attribute::Graph(Box::new(branch("else")))),
            ])],
            vec![
                floats("stored", &[2, 3]),
                floats("r", &[1, 2, 2]),
                ints("start0", &[0]),
                ints("end0", &[1]),
                ints("end1", &[2]),
                ints("axis0", &[0]),
            ],
            &["y"],
        );
        fold_weight_layouts(&mut top);
        assert!(!top.initializers.contains_key("stored"));
        let shared: Vec<&String> = top
            .initializers
            .keys()
            .filter(|k| k.ends_with("_w"))
            .collect();
        assert_eq!(shared.len(), 1, "one copy: {shared:?}");
        let w = top.initializers[shared[0]].data.as_f32().unwrap();
        // rows swapped: [stored[1], stored[0]] with a direction axis in front
        assert_eq!(w.shape(), [1, 2, 3]);
        assert_eq!(w[[0, 0, 0]], 3.0 * 0.5 - 3.0);
        assert_eq!(w[[0, 1, 0]], -3.0);
        for branch in ["then_branch", "else_branch"] {
            let Attribute::Graph(sub) = &top.nodes[0].attributes[branch] else {
                panic!("{branch}");
            };
            let ops: Vec<&str> = sub.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
            assert_eq!(ops, ["RNN"], "{branch}");
            assert_eq!(sub.graph.nodes[0].inputs[1], *shared[0], "{branch}");
            assert!(sub.graph.initializers.is_empty(), "{branch}");
        }
    }
}
