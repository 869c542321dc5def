//! Lifting a graph to a newer default-domain opset, for exports that need newer operators
//! (QDQ needs opset 13 for per-channel scales and 21 for 4- and 16-bit types).
//!
//! Every default-domain operator whose inputs, attributes or meaning changed between opsets 7
//! and 21 (from the ONNX operator changelog) is rewritten to the target's form, one family per
//! file: [`attr_inputs`] (attributes that became inputs: Slice, TopK, Pad, Clip, Dropout,
//! Squeeze, Unsqueeze, Reduce*, Split, DFT), [`resample`] (Upsample → Resize, Resize's inputs
//! and coordinate modes), [`softmax`] (Softmax, LogSoftmax and Hardmax over one axis from 13),
//! [`normalization`] (BatchNormalization, GroupNormalization) and [`replaced`] (removed and
//! renamed operators and attribute values). The other operators' later versions only add types
//! or attributes whose defaults keep the old behaviour (e.g. ArgMax's `select_last_index`,
//! MaxPool's `ceil_mode`, Cast's `saturate`, Gemm's optional C), so they are kept as they are.
//!
//! A node that cannot be lifted exactly is an error naming it and what is missing, and a lift
//! ends with [`stale_forms`], so the result is never a file onnx.checker rejects for a form
//! its opset no longer has. Subgraphs (If's branches, Loop's and Scan's bodies) are lifted with the
//! graph holding them, innermost first; new names are unique across every scope.

mod attr_inputs;
mod check;
mod facts;
mod normalization;
mod replaced;
mod resample;
mod rewriter;
mod softmax;

pub use check::stale_forms;

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::ir::{Dim, Graph, Node};
use rewriter::Rewriter;

/// The oldest opset a graph can be lifted from.
pub const OLDEST_SOURCE_OPSET: i64 = 7;
/// The newest opset a graph can be lifted to.
pub const NEWEST_TARGET_OPSET: i64 = 21;

/// Rewrites `graph` for opset `target` (no change when it is already there or newer), and
/// declares the element type and rank of graph outputs the file left undeclared.
pub fn upgrade_opset(graph: &mut Graph, target: i64) -> Result<()> {
    let from = graph.opset;
    if from >= target {
        return Ok(());
    }
    if from == 0 {
        // No default-domain import: nothing to rewrite.
        graph.opset = target;
        return Ok(());
    }
    if from < OLDEST_SOURCE_OPSET {
        return Err(Error::Graph(format!(
            "the model uses opset {from}; Quantscope lifts opsets {OLDEST_SOURCE_OPSET} and newer (to {target})"
        )));
    }
    if target > NEWEST_TARGET_OPSET {
        return Err(Error::Graph(format!(
            "cannot lift to opset {target}; the newest opset Quantscope lifts to is {NEWEST_TARGET_OPSET}"
        )));
    }
    let mut names = HashSet::new();
    collect_names(graph, &mut names);
    lift_graph(graph, from, target, &names)
}

/// Lifts `graph` (the model's or a subgraph, at opset `from`) and, first, its subgraphs.
/// `names` holds every name of the model, so new ones are unique across all scopes.
fn lift_graph(graph: &mut Graph, from: i64, target: i64, names: &HashSet<String>) -> Result<()> {
    graph.opset = from;
    for node in &mut graph.nodes {
        if from < 9 && target >= 9 && node.op_type == "Scan" {
            return Err(Error::Op {
                node: node.name.clone(),
                op: node.op_type.clone(),
                msg: format!(
                    "cannot be lifted from opset {from} to {target}: Scan-8 (batched, with sequence_lens) has no rewrite to Scan-9"
                ),
            });
        }
        for (_, sub) in node.subgraphs_mut() {
            lift_graph(&mut sub.graph, from, target, names)?;
        }
    }
    let mut rw = Rewriter::new(graph, target);
    rw.also_taken(names);
    for node in graph.nodes.clone() {
        lift_node(&mut rw, node)?;
    }
    let Rewriter {
        nodes,
        constants,
        facts,
        ..
    } = rw;
    graph.nodes = nodes;
    for t in constants {
        graph.initializers.insert(t.name.clone(), t);
    }
    declare_outputs(graph, &facts);
    graph.opset = target;
    let stale = stale_forms(graph);
    if !stale.is_empty() {
        return Err(Error::Graph(format!(
            "lifting from opset {from} to {target} left forms opset {target} does not have: {}",
            stale.join("; ")
        )));
    }
    Ok(())
}

/// Every value and node name of `graph` and its subgraphs.
fn collect_names(graph: &Graph, names: &mut HashSet<String>) {
    names.extend(graph.initializers.keys().cloned());
    names.extend(
        graph
            .inputs
            .iter()
            .chain(&graph.outputs)
            .map(|v| v.name.clone()),
    );
    for node in &graph.nodes {
        names.insert(node.name.clone());
        names.extend(node.inputs.iter().chain(&node.outputs).cloned());
        for (_, sub) in node.subgraphs() {
            collect_names(&sub.graph, names);
        }
    }
}

fn lift_node(rw: &mut Rewriter<'_>, node: Node) -> Result<()> {
    if !matches!(node.domain.as_str(), "" | "ai.onnx") {
        rw.emit(node);
        return Ok(());
    }
    let op = node.op_type.as_str();
    if attr_inputs::handles(op) {
        attr_inputs::lift(rw, node)
    } else if resample::handles(op) {
        resample::lift(rw, node)
    } else if softmax::handles(op) {
        softmax::lift(rw, node)
    } else if normalization::handles(op) {
        normalization::lift(rw, node)
    } else if replaced::handles(op) {
        replaced::lift(rw, node)
    } else {
        rw.emit(node);
        Ok(())
    }
}

/// Declares the element type and rank of graph outputs the file left undeclared, where the
/// graph tells them (onnx.checker requires both on a model's outputs).
fn declare_outputs(graph: &mut Graph, facts: &facts::TensorFacts) {
    for output in &mut graph.outputs {
        if output.dtype.is_none() {
            output.dtype = facts.dtype(&output.name);
        }
        if output.shape.is_none() {
            output.shape = facts.rank(&output.name).map(|r| vec![Dim::Unknown; r]);
        }
    }
}

#[cfg(test)]
mod tests;
