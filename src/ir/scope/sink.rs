//! Returning constants to the subgraphs that read them, for writing files.
//!
//! [`super::close_subgraphs`] hoists every subgraph initializer into the top graph, so that all
//! weights are ordinary parameters. A file written that way is valid ONNX (subgraphs read outer
//! values by name), but a weight then lives far from the layer that reads it, and a weight's
//! DequantizeLinear in the top graph cannot be fused with a Conv inside a branch by a runtime's
//! per-graph QDQ optimizers. [`sink_constants`] undoes the hoisting where it is unambiguous: an
//! initializer, or a node computing from initializers only (such as a weight's
//! DequantizeLinear), whose value is read by exactly one subgraph and by nothing else in its own
//! graph moves into that subgraph, and on down to the innermost subgraph reading it.

use std::collections::{HashMap, HashSet};

use crate::ir::{Graph, Node, Subgraph, ValueInfo};

/// Moves constants read by a single subgraph into it, at every depth (see the module docs).
pub fn sink_constants(graph: &mut Graph) {
    if !graph.has_subgraphs() {
        return;
    }
    while let Some(index) = movable_node(graph) {
        let moved = graph.nodes.remove(index);
        let added: Vec<String> = moved
            .inputs
            .iter()
            .filter(|i| !i.is_empty())
            .cloned()
            .collect();
        let out = moved.outputs[0].clone();
        with_capturing_subgraph(graph, &out, |sub, inner| {
            let mut copy = moved.clone();
            copy.outputs = vec![inner.to_string()];
            sub.graph.nodes.insert(0, copy);
            drop_capture(sub, inner);
            for name in &added {
                if !sub.captured().iter().any(|c| &c.name == name) {
                    sub.graph.inputs.push(capture_info(name));
                }
            }
        });
    }
    let names: Vec<String> = graph.initializers.keys().cloned().collect();
    for name in names {
        if !only_one_subgraph_reads(graph, &name) {
            continue;
        }
        let Some(mut tensor) = graph.initializers.remove(&name) else {
            continue;
        };
        let mut placed = false;
        with_capturing_subgraph(graph, &name, |sub, inner| {
            if sub.graph.outputs.iter().any(|o| o.name == inner) {
                return; // returned as it is: stays an outer value
            }
            tensor.name = inner.to_string();
            sub.graph
                .initializers
                .insert(inner.to_string(), tensor.clone());
            drop_capture(sub, inner);
            placed = true;
        });
        if !placed {
            graph.initializers.insert(name, tensor);
        }
    }
    for node in &mut graph.nodes {
        for (_, sub) in node.subgraphs_mut() {
            sink_constants(&mut sub.graph);
        }
    }
}

/// The first node (without subgraphs, with one output) computing from initializers only whose
/// output exactly one subgraph reads and nothing else.
fn movable_node(graph: &Graph) -> Option<usize> {
    graph.nodes.iter().position(|n| {
        !n.has_subgraphs()
            && n.outputs.len() == 1
            && n.inputs
                .iter()
                .all(|i| i.is_empty() || graph.initializers.contains_key(i))
            && only_one_subgraph_reads(graph, &n.outputs[0])
    })
}

/// Whether `name` is read by exactly one subgraph of one node of `graph`, and neither by an
/// operator input of a node nor as a graph output.
fn only_one_subgraph_reads(graph: &Graph, name: &str) -> bool {
    if graph.outputs.iter().any(|o| o.name == name) {
        return false;
    }
    let mut readers = 0;
    for node in &graph.nodes {
        let formal = node.formal_input_count();
        if node.inputs[..formal].iter().any(|i| i == name) {
            return false;
        }
        let bindings = bindings(node);
        for (_, sub) in node.subgraphs() {
            readers += sub
                .captured()
                .iter()
                .filter(|c| bindings.get(c.name.as_str()).map(String::as_str) == Some(name))
                .count();
        }
    }
    readers == 1
}

/// Calls `f` with the subgraph capturing the outer value `name` and the name it reads it
/// under, then rebinds the captures of the node holding it.
fn with_capturing_subgraph(graph: &mut Graph, name: &str, mut f: impl FnMut(&mut Subgraph, &str)) {
    for node in &mut graph.nodes {
        let bindings = bindings(node);
        let inner: Vec<String> = bindings
            .iter()
            .filter(|(_, outer)| outer.as_str() == name)
            .map(|(inner, _)| inner.clone())
            .collect();
        if inner.is_empty() {
            continue;
        }
        for (_, sub) in node.subgraphs_mut() {
            let captured: HashSet<String> = sub.captured().iter().map(|c| c.name.clone()).collect();
            for inner in inner.iter().filter(|i| captured.contains(*i)) {
                f(sub, inner);
            }
        }
        rebind(node, &bindings);
    }
}

/// What each capture of `node`'s subgraphs is bound to: inner name to outer name.
fn bindings(node: &Node) -> HashMap<String, String> {
    let formal = node.formal_input_count();
    node.captured_names()
        .into_iter()
        .map(str::to_string)
        .zip(node.inputs[formal..].iter().cloned())
        .collect()
}

/// Rewrites `node`'s capture inputs after its subgraphs' captures changed: a capture bound
/// before keeps its binding, a new one reads the outer value of its own name.
fn rebind(node: &mut Node, before: &HashMap<String, String>) {
    let formal = node.inputs.len() - before.len();
    let captured: Vec<String> = node
        .captured_names()
        .into_iter()
        .map(|inner| {
            before
                .get(inner)
                .cloned()
                .unwrap_or_else(|| inner.to_string())
        })
        .collect();
    node.inputs.truncate(formal);
    node.inputs.extend(captured);
}

fn drop_capture(sub: &mut Subgraph, inner: &str) {
    let formal = sub.formal_inputs;
    let mut k = formal;
    while k < sub.graph.inputs.len() {
        if sub.graph.inputs[k].name == inner {
            sub.graph.inputs.remove(k);
        } else {
            k += 1;
        }
    }
}

fn capture_info(name: &str) -> ValueInfo {
    ValueInfo {
        name: name.to_string(),
        dtype: None,
        shape: None,
    }
}
